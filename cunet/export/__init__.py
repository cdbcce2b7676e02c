"""Exports of a trained model: SavedModel (`savedmodel`, with the in-graph separation of `graph`),
`.tflite` (`tflite`) and `.onnx` (`onnx`), which share the mask network and record (`shared`,
`subpixel`); `formats.export_model_file` is the entry of every format.

Nothing is imported here: import the submodules."""
