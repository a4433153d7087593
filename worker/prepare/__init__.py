"""Page preparation (render + encode) in a pool of processes for queue workers; see :mod:`.pool`."""
