"""dualdc: infrastructure as code for JB Financial Group's twin data centers."""

__version__ = "0.1.0"
