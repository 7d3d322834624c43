"""``model.fit`` on the 8×8 digits, distributed over the ranks (``--single``: one process, no MPI).

usage: fit_digits.py OUT_DIR BACKEND [--single]. Every rank trains on 32 examples per step with the learning rate
scaled by the number of ranks p (Horovod's recipe); ``--single`` is the single-process run of the same recipe for
p = 2: batches of 64 (the 2 ranks' examples of a step) and the same learning rate. Checkpoints go to
OUT_DIR/r{rank}_ep{epoch}.npz (so a write by any rank but 0 would show); writes OUT_DIR/result_{rank|single}.json
with the test accuracy, the history and the checkpoints the callback saved.
"""

import json
import sys

import numpy as np

import graphc as gc
from graphc import nn

out, backend, single = sys.argv[1], sys.argv[2], "--single" in sys.argv
rank = 0 if single else gc.distributed.init() or gc.distributed.rank()
data = gc.data.digits(seed=0)
model = nn.Sequential([nn.Dense(64, activation="relu", input_shape=(64,)), nn.Dense(10, activation="softmax")])
ranks = 2 if single else gc.distributed.size()
lr = 2e-3 * ranks  # Horovod's recipe: the learning rate scaled with the ranks (p times the examples per step)
model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(lr), metrics=["accuracy"],
              backend=backend)
checkpoint = nn.ModelCheckpoint(f"{out}/r{rank}_ep{{epoch}}.npz")
stop = nn.EarlyStopping(monitor="loss", min_delta=0.003, patience=1)  # watches the rank-averaged loss
history = model.fit(data.x_train, data.y_train, epochs=25, batch_size=64 if single else 32, validation_split=0.1,
                    callbacks=[checkpoint, stop], distributed=not single, verbose=2)
loss, accuracy = model.evaluate(data.x_test, data.y_test)
weights = model.get_weights()
result = {"accuracy": accuracy, "history": history.history, "saved": checkpoint.saved,
          "stopped_epoch": stop.stopped_epoch, "checksum": float(sum(np.sum(w, dtype=np.float64) for w in
                                                                     weights.values()))}
with open(f"{out}/result_{'single' if single else rank}.json", "w") as f:
    json.dump(result, f)
