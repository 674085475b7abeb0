"""What the viewer sees, measured: lip sync (SyncNet's LSE-D and LSE-C), the mouth's sharpness, the
paste's seam, its jitter, jumps at speech start and end (`lipstream bench quality`)."""
