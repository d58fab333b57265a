"""MadEvent SubProcesses/P* directories as batched shared libraries with a small C ABI, loaded with cffi."""
