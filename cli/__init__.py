"""The ``rssn`` command line: click commands only; all work happens in the libraries."""
