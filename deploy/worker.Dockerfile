# syntax=docker/dockerfile:1
# The Celery worker that runs MODNet. Two targets that differ only in the torch build:
#   docker build -f deploy/worker.Dockerfile -t backdrop-worker:gpu .               # CUDA (the default: last stage)
#   docker build -f deploy/worker.Dockerfile --target cpu -t backdrop-worker:cpu .  # CPU only, much smaller
# Build arguments:
#   FETCH_WEIGHTS=1  download and verify the MODNet checkpoint into the image (the default); 0 leaves
#                    /models empty: mount the file there, or let the container download it when it starts.
#   TORCH_VERSION    the torch release of both targets; TORCH_CUDA is the CUDA tag of the GPU wheels
#                    (the pair must exist on download.pytorch.org/whl/<TORCH_CUDA>).
# No CUDA base image is needed: the CUDA torch wheels bring the CUDA runtime and cuDNN as pip packages,
# and the NVIDIA container runtime mounts the host's driver into a container that was given a GPU.

ARG TORCH_VERSION=2.5.1
ARG TORCH_CUDA=cu124

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BACKDROP_MODEL_PATH=/models/modnet_photographic_portrait_matting.ckpt \
    BACKDROP_ENGINE_CACHE_DIR=/models/engines
# The engine converted at the first start (OpenVINO, keyed by the checkpoint's sha256) is kept beside
# the checkpoint, so a volume on /models keeps it across restarts; an unwritable one only costs the
# conversion at each start.
# A fixed numeric UID lets Kubernetes' runAsNonRoot check the user without a name lookup. It owns
# /models and /app/data (LocalStorage's default root) so it can write there; a named volume mounted
# on /models starts out with this ownership.
RUN useradd --create-home --uid 10001 --user-group backdrop \
    && install -d -o backdrop -g backdrop /models /app/data
WORKDIR /app
# Inherited by both targets. Download the checkpoint only when nothing is at BACKDROP_MODEL_PATH (built
# with FETCH_WEIGHTS=0 and nothing mounted), never over a file that is there; then `exec`, so that Celery
# is PID 1 and receives SIGTERM itself (warm shutdown: running jobs finish, no new ones are taken).
# The concurrency comes from the settings (BACKDROP_WORKER_CONCURRENCY, default 2 x BACKDROP_MAX_BATCH_SIZE).
CMD ["/bin/sh", "-c", "[ -e \"$BACKDROP_MODEL_PATH\" ] || python -m pretrained.fetch --no-progress || exit 1; exec celery -A worker.celery_app:app worker --pool threads --loglevel INFO -Q interactive,batch"]

# --- the project's files, copied by both targets in one step ------------------------------------
FROM scratch AS src
COPY pyproject.toml README.md /
COPY common/ /common/
COPY worker/ /worker/
COPY api/ /api/
COPY pretrained/ /pretrained/

# --- the checkpoint, fetched once for both targets (this stage is not shipped) ------------------
# It copies only what the fetch needs, so that editing the worker or the API does not download again;
# without worker/ there is no `backdrop` here, and `python -m pretrained.fetch` is the same command
# as `backdrop weights fetch`, with the same flags.
FROM base AS weights
ARG FETCH_WEIGHTS=1
COPY pyproject.toml README.md /src/
COPY common/ /src/common/
COPY pretrained/ /src/pretrained/
# The fetch writes the file with mode 0600; 0644 lets any UID read it (e.g. one a cluster assigns).
RUN if [ "$FETCH_WEIGHTS" = "1" ]; then \
        pip install /src \
        && python -m pretrained.fetch --no-progress --dest "$BACKDROP_MODEL_PATH" \
        && chmod 0644 "$BACKDROP_MODEL_PATH"; \
    fi

# --- torch, in its own layer so that code changes do not download it again ----------------------
FROM base AS torch-cpu
ARG TORCH_VERSION
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

FROM base AS torch-gpu
ARG TORCH_VERSION
ARG TORCH_CUDA
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" "torch==${TORCH_VERSION}"
# What the NVIDIA runtime exposes to a container that was given a GPU (the CUDA images set the same).
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility

# --- the two targets: the same steps on either torch --------------------------------------------
# `.[worker]` is installed after torch and keeps it: that torch already satisfies the `torch>=2.2`
# range, so pip neither downloads another nor swaps the CUDA build for PyPI's. The check after it
# fails the build if the torch in place is not the intended build after all. mtcnn-runtime pulls in
# the GUI build of OpenCV (which needs libGL); it is swapped for the headless build it shares cv2 with.

FROM torch-cpu AS cpu
COPY --from=src / ./
RUN pip install ".[worker]" && rm -rf build ./*.egg-info \
    && pip uninstall -y opencv-python \
    && pip install --force-reinstall --no-deps "opencv-python-headless==$(python -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')" \
    && python -c "import torch; assert torch.version.cuda is None, torch.version.cuda"
COPY --from=weights --chown=10001:10001 /models/ /models/
USER 10001:10001

FROM torch-gpu AS gpu
COPY --from=src / ./
RUN pip install ".[worker]" && rm -rf build ./*.egg-info \
    && pip uninstall -y opencv-python \
    && pip install --force-reinstall --no-deps "opencv-python-headless==$(python -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')" \
    && python -c "import torch; assert torch.version.cuda, 'not a CUDA build of torch'"
COPY --from=weights --chown=10001:10001 /models/ /models/
USER 10001:10001
