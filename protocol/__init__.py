"""corral's wire protocol: JSON-RPC 2.0 over ZeroMQ frames, schemas, errors, client.

This package never imports the daemon: clients can depend on it alone.
"""

PROTOCOL_VERSION = 1
