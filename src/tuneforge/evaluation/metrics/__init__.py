"""The metrics of the evaluation suites: pure functions over predictions and references.

Every suite function takes the model's outputs (`predictions`) and the expected outputs
(`references`), paired one to one, and returns a `SuiteResult` (`contract.py`):

* `metrics`: the suite's row in the results table, every value a fraction in 0..1 (never a
  percentage: sacrebleu's 0..100 scores are divided by 100);
* `per_sample`: one dict per sample, for the per-sample browser and its filters. Every dict has
  `score` (0..1, higher is better) and, where a sample is simply right or wrong (classification,
  extraction, json, tool_calls), `correct`;
* `details`: what does not fit a row (the confusion matrix, the per-class table, signatures).

The suites: `classification.py` (class labels), `extraction.py` (SQuAD answers), `overlap.py`
(summaries, replies and translations scored by their overlap with the reference: ROUGE, BLEU,
chrF, embedding similarity), `json_output.py` (JSON answers), `tool_calls.py` (the tool calls in
answers, scored against a reference's calls and the tools' schemas); `suites.py` names them.

The scoring is done by the maintained libraries (scikit-learn, sacrebleu, rouge-score,
jsonschema), imported inside the functions so that importing these modules stays cheap.
Mismatched lengths or empty inputs raise `ValueError`; anything but strings (a single string
instead of a list, a None prediction) raises `TypeError`.
"""
