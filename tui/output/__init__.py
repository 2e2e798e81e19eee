"""Writers of a run's answers for people and programs: headless stdout and `--output` files.

They take `StreamEvent`s as every consumer does and import no Textual, so the dashboard's
`--output` and headless stdout are written by the same code, in the same shape.
"""
