"""Evaluating a model on labelled photos: how often it is right, for whom, and how far its
confidence can be trusted (gclf-eval).

What it holds:
- metrics: counts, Wilson intervals, top-1 accuracy, per-class precision/recall/F1, confusion
- reliability: expected calibration error and reliability-diagram bins (overall, per answer)
- coverage: accuracy against coverage when only the most confident answers count
- group_metrics: accuracy per group with intervals, the worst group and its gap to the best
- groups: where groups come from (UTKFace file names, a CSV file of path,group)
- calibration: fitting and applying a temperature or per-class scale and bias, the record a
  model file carries (gclf.calibration), and the seeded fit/report split
- fit_report: calibrating on one part of a set, measuring on the other, writing the copy
- outcomes: one model's answers on a labelled set (the arrays every figure is computed from)
- run: classifying a folder-per-class set through the runtime's own path
- summary: the figures of one evaluation as a JSON-able dict
- report: the console table and the Markdown report; plots: the PNGs (matplotlib, optional)
- model_card: MODEL_CARD.md rendered from model files' metadata (`gclf.card` and the rest);
  card_section: gclf-eval --card's section of it

What it may import: numpy and the runtime's core modules; matplotlib only inside `plots`,
where its absence is a one-line note, never an error. No torch, no onnx, no click.
"""
