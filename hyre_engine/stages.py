"""The stage keys a build reports to its progress callback, defined once.

A module of names only, so what follows a build (the server's job registry, the
first-launch screen) can name its stages without importing the build stack (torch).
The UI maps each key to its own text.
"""

# FINETUNE counts the steps of a joint fine-tuning of the backbone (BuildConfig.finetune).
EMBED, CALIBRATE, FINETUNE, TRAIN, PREDICT = "embed", "calibrate", "finetune", "train", "predict"
BUILD_STAGES = (EMBED, CALIBRATE, FINETUNE, TRAIN, PREDICT)
