"""rssn: the composition library (BG-20k backgrounds, matting-set preparation,
RSSN composites as webdataset shards, and the composite-vs-real gap).

Needs no torch: cluster workers that only compose stay light.
"""
__version__ = "0.1.0"
