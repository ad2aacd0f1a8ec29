"""The run engine: the offline-to-online protocol (protocol.py) for a vector of runs, and its parts."""
