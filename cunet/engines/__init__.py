"""Engines compute a chunk's masks: the `MaskEngine` interface, its Keras/SavedModel, LiteRT and
ONNX Runtime implementations, and model loading (`load_engine` picks one by the model file).

Nothing is imported here: import the submodules."""
