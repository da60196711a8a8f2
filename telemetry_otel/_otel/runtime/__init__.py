"""What every layer leans on: the library's logger, fork safety, threads, the exit hook."""
