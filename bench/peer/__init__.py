"""The peer side by side: a Pipecat bot serving the same load (run only by `make bench-peer`)."""
