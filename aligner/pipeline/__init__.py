"""The pipeline driver: a stage runner that skips completed stages (``runner``), the demo and study
profiles (``profiles``) and the ``make data`` stages (``data_stages``)."""
