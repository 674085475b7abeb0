"""The graphs that run the stages: a render (`render`), many renders on Ray (`render_many`), the
threaded pipeline they run on (`pipeline`), and what exists once per process (`runtime`)."""
