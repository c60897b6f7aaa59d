"""Display text for the engine's registry names (one dict per registry).

Keys are the engine's names; a test checks that every registered name has its text.
Never imports streamlit.
"""

from __future__ import annotations

# Query strategies (the live session's next pair), as the Label page offers them.
STRATEGY_TEXT = {
    "bald": "BALD: where the heads disagree most",
    "entropy": "Entropy: where the weighted model is least sure",
    "random": "Random",
}
# The same strategies in the evaluation protocol, where they choose the n labels.
EVAL_STRATEGY_TEXT = {
    "random": "Random: the n labels are drawn at random (the paper's main protocol)",
    "entropy": "Entropy: each next label is where the weighted model is least sure",
    "bald": "BALD: each next label is where the heads disagree most",
    "personal_entropy": "Personal entropy: where HyRe + the personal head is least sure",
    "personal_bald": "Personal BALD: where HyRe + the personal head would learn most",
}
# Evaluation methods: legend and table names.
METHOD_TEXT = {
    "hyre": "HyRe",
    "uniform": "Uniform ensemble",
    "single": "Single model",
    "finetune": "Fine-tuning",
    "convex": "Convex fit",
    "best_head_oracle": "Best head (oracle)",
    "personal": "HyRe + personal head",
    "residual": "Uniform ensemble + personal head",
    "probe": "Probe (logistic regression on the embedding difference)",
    "user_ceiling": "Per-user fit on half the rows (upper bound)",
}
# The summary table's method column: the long names above cut at 1280 px, so the table shows
# these and its column's help gives the long form of each.
METHOD_SHORT = {
    "residual": "Uniform + personal head",
    "probe": "Probe",
    "user_ceiling": "Per-user fit (upper bound)",
}
LOSS_TEXT = {"zero-one": "0-1 error (the paper's choice)", "cross-entropy": "cross-entropy"}
# Build and evaluation stages: what a progress bar says.
STAGE_TEXT = {
    "load": "Loading the embedding model",
    "embed": "Embedding the texts",
    "calibrate": "Calibrating beta",
    "finetune": "Fine-tuning the backbone with the heads",
    "train": "Training the heads",
    "predict": "Caching the head predictions",
    "tune": "Fine-tuning the heads on each group's labels",
    "evaluate": "Evaluating groups",
    "import": "Importing the demo pool",
}
# What a stage's done / total counts, where a bare count would be read as something else
# (training counts optimiser steps, not heads).
STAGE_UNITS = {"embed": "texts", "train": "steps", "predict": "pairs", "calibrate": "held-out annotators"}
# Joint fine-tuning modes (joint_training.MODES), as the Data page offers them.
FINETUNE_MODE_TEXT = {
    "auto": "Automatic (full weights up to 150M parameters, else LoRA)",
    "full": "Full weights",
    "lora": "LoRA adapters",
}
# A session's label values, as a table shows them.
LABEL_TEXT = {
    "a": "A",
    "b": "B",
    "skip": "skipped",
    "tie": "tie",
    "both_bad": "both bad",
    "cant_judge": "can't judge",
}
# What each judgement that prefers neither side means, as its button's tooltip says it.
NO_PREFERENCE_HELP = {
    "skip": "Skip: the pair is not asked again. It is not a label and teaches the heads nothing.",
    "tie": "Both are equally good. Stored and exported as a tie; it teaches the heads nothing, "
    "because neither answer is preferred.",
    "both_bad": "Neither answer is acceptable. Stored and exported; it teaches the heads nothing, "
    "because neither answer is preferred.",
    "cant_judge": "You cannot tell (topic unknown to you, unreadable). Stored and exported; it "
    "teaches the heads nothing.",
}
# Session modes: who labels.
MODE_TEXT = {"human": "I label", "persona": "A simulated persona labels"}
KIND_TEXT = {
    "shared": "Shared base with frozen random priors (recommended)",
    "epinet": "Epinet: one base plus an index-fed network",
    "vanilla": "Vanilla: K independent networks",
}
FORMAT_TEXT = {
    "auto": "Detect from the file",
    "design": "HyRe format: prompt + response_a/response_b/label or chosen/rejected",
    "hh-rlhf": "HH-RLHF transcripts: chosen / rejected",
    "llmbar": "LLMBar: input, output_1, output_2, label 1 or 2",
    "ratings": "Per-user ratings: user, item, rating, text",
}
# How two people's weights are compared (profiles.MEASURES).
MEASURE_TEXT = {
    "cosine": "Similarity of weights (cosine)",
    "agreement": "Same choice on pool pairs",
}
# Colour-scale title of each comparison measure.
MEASURE_SHORT = {"cosine": "cosine", "agreement": "agree"}
