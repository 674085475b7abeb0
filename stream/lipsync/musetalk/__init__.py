"""MuseTalk 1.5 (MIT code; weights for any use): the folder's layout (`files`), the loaders (`load`),
the audio features (`features`), face parsing (`bisenet`) and the blend mask (`blend`), the model
behind the lip-sync contract (`model`), and random-weight folders for tests and benchmarks (`random`)."""
