"""Dataset augmentation: new training rows made from a processed dataset's train split, each
naming its source row and its methods (see `docs/augmentation.md`).

- `spec`: `AugmentSpec`, the methods and their settings;
- `text_ops`: word swap, deletion, synonym replacement and insertion;
- `llm`: paraphrase and back-translation: the texts to rewrite planned, then sent to the model
  concurrently;
- `synonyms`: a reader of a local WordNet (no network);
- `images`: flips, crops, rotation and colour jitter with Pillow;
- `records`: `augment_records(records, spec)`, the variants with their lineage;
- `measure`: token counts and statistics of augmented rows;
- `stored`: a stored processed dataset into a new one (train augmented, test copied).

The preview (originals beside their variants, with counts, tokens and cost) is
`services/augmentation.py`; the job is `jobs/kinds/augment.py` and `jobs/workers/augment.py`.
"""
