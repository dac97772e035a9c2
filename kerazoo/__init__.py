"""The ``kerazoo`` command line (:mod:`kerazoo.cli`); the library is :mod:`zoo`, :mod:`converters` and
:mod:`training`. Kept apart from them so that ``kerazoo --help`` and usage errors answer without
importing Keras (``import zoo`` loads Keras and its backend: ~1.5-3 s)."""
