#!/usr/bin/env bash
# The paper's Table 1 on CIFAR-10, on one GPU, in one command (run from the repository root after
# `make install`):
#
#   bash examples/gpu/cifar10-table1.sh                 # the paper's budget: 1000 epochs per run
#   SHORT=1 bash examples/gpu/cifar10-table1.sh         # a short budget (see EPOCHS below)
#   DATA_ROOT=/data/cifar DOWNLOAD=1 bash examples/gpu/cifar10-table1.sh   # fetch CIFAR-10 first
#   MAKE_ARGS=-n bash examples/gpu/cifar10-table1.sh    # print the commands it would run
#
# The paper's settings (its Table 1, App. A.2): the DCGAN encoder, DIM(G) and DIM(L) each with the
# JSD, infoNCE and DV estimators, 2048-wide MI heads, batch 64, Adam 1e-4 with betas (0.5, 0.999)
# (dimctl's defaults), beside an untrained encoder; linear SVM and the MLP probe on conv, fc and Y.
# Speed: bf16 where the GPU runs it fast (--precision auto) and torch.compile (pays off over long
# runs). The runs go one after another (one GPU); an interrupted pipeline continues where it
# stopped, each pretraining from its last checkpoint. It ends by printing the report's tables beside
# the paper's numbers and writing OUT/table1.md, .html and .txt.
set -euo pipefail
cd "$(dirname "$0")/../.."

DATA_ROOT=${DATA_ROOT:-data}
OUT=${OUT:-runs/gpu/cifar10}
# SHORT=1: 20 epochs per run instead of 1000, so the 7 runs fit in roughly an hour on one recent GPU
# (the paper's budget is 50× that). Set EPOCHS to choose any other budget.
EPOCHS=${EPOCHS:-$([ "${SHORT:-0}" = 1 ] && echo 20 || echo 1000)}
DIMCTL=${DIMCTL:-$(pwd)/.venv/bin/dimctl}
[ -x "$DIMCTL" ] || DIMCTL=dimctl

if [ "${DOWNLOAD:-0}" = 1 ]; then  # torchvision's download, through dimctl's loader (an untrained run)
  "$DIMCTL" pretrain --dataset cifar10 --data-root "$DATA_ROOT" --download --epochs 0 --out "$OUT/.download" --force >/dev/null
fi

exec make ${MAKE_ARGS:-} -f examples/Makefile table1 DIMCTL="$DIMCTL" DATASET=cifar10 DATA_ROOT="$DATA_ROOT" OUT="$OUT" \
  EPOCHS="$EPOCHS" UNITS=2048 TABLE1_PRESETS="dim-g dim-l" TABLE1_ESTIMATORS="jsd infonce dv" \
  PRETRAIN_FLAGS="--batch-size 64 --lr 1e-4 --precision auto --compile --checkpoint-every 2000" \
  CLASSIFIERS=svm,mlp REPORT_FLAGS=--paper
