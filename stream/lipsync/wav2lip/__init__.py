"""Wav2Lip: the network laid out for the public checkpoints (`net`), their loader (`checkpoint`), its
fast inference form (`inference`, `lower_face`) and the lip-sync contract it fills (`model`)."""
