"""Model converters. ``from converters import caffe`` for Caffe deploy prototxt + caffemodel files."""
