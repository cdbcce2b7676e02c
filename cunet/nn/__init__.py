"""The Keras network: FiLM and control layers, the (C-)U-Net models, and the STFT in tf.signal.

Nothing is imported here: import the submodules."""
