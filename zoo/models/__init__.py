"""Model families; importing this package registers every builder."""

from zoo.models import cpm, fcn, hourglass, pspnet, resnet, resnet_v2  # noqa: F401
