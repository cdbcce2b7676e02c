"""Audio in and out: file reading and writing (soundfile, ffmpeg), pipes, resampling, atomic writes,
command-line inputs, output names and output settings. NumPy only; no TensorFlow.

Nothing is imported here: import the submodules."""
