"""The llama.cpp engine, run in a supervised child process."""
