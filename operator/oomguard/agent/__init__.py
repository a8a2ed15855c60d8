"""The node agent: sample the node's memory, decide with the engine, kill whole pods."""
