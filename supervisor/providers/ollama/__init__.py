"""The ``ollama`` provider's logic: a local model served by Ollama, driven in-process.

No process is supervised: each turn is a streamed ``chat`` through the official
``ollama`` client, run on the session's worker thread. The modules:

* ``client``: where the server is, whether it answers, which model and what it
  can do; a client whose streams a stop can cut;
* ``history``: the conversation rebuilt from stored AgentMessages;
* ``turn``: one turn (streamed responses merged into one thinking and one text
  per response, progress, cost, the tool loop, how it ends);
* ``tools``: the tools a model may call, confined to the session's directories;
* ``options``: the ``providerConfig`` schema and its validation.
"""
