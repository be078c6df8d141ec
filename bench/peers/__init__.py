"""One driver per system measured: tasktrail itself and its peers (see base.Peer)."""
