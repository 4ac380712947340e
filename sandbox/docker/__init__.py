"""The docker engine: gVisor sandboxes through dockerd (engine.py), with attach-stream framing
(attach.py) and a private dockerd for machines without systemd (daemon.py)."""
