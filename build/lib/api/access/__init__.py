"""Access: one operation's caller, transaction, policy decisions and audit record, shared by the
graph, REST endpoints and subscription events alike."""
