"""corral's actors: one SessionActor per live session, the RegistryActor, the
StoreActor (sole database writer), reader actors, and the timer scheduler.

Actors never touch sockets and never spawn processes themselves: the daemon
injects a provider launcher and an outbox.
"""
