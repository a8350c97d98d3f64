"""gclf training: fine-tune torchvision's GoogLeNet on a folder of labelled photos.

Needs the `train` extra (torch, torchvision). Images are decoded and preprocessed with
`gclf.runtime.preprocess`, the same code the runtime runs on a device.
"""
