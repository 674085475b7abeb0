"""Benchmarks, one module each (`lipstream bench KIND`): `lipsync` (the model stage and a whole render),
`kernels`, `sessions`, `serve`, `tts`. Each has `run(args, device)`; `machine` and `report` are shared."""
