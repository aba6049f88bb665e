"""DeepSeek Aligner: curriculum DPO-Positive against hallucination in small instruction models.

One module per concern; the scripts under evaluation/, first_improvement/, further_improvement/,
old_training/ and scripts/ are thin command-line entry points over this package.
"""

__version__ = "0.1.0"
