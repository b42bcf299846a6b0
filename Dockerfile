# The trainer image for the jobs in k8s/: the project's pinned environment in /app/.venv, built
# by the same `make setup` CI runs, plus Horovod and an sshd for horovodrun (see k8s/README.md).
#
# CUDA: the TensorFlow 2.20 wheel is built against CUDA 12.5 and cuDNN 9.3 and refuses a cuDNN
# with a lower minor version at run time. The 12.5.1 CUDA images carry cuDNN 9.2, so this uses
# 12.6.3 (CUDA 12 minor versions are compatible; its cuDNN is checked below). Python 3.11 (our
# pins need it) comes from the deadsnakes PPA: Ubuntu 22.04 ships 3.10, NVIDIA has no Debian image.
ARG CUDA_TAG=12.6.3-cudnn

# Build stage: the devel image has nvcc and nccl.h, so scripts/setup_horovod.sh builds Horovod's
# NCCL GPU operations. `--build-arg HOROVOD_GPU_OPERATIONS=` builds CPU (Gloo) operations only.
FROM nvidia/cuda:${CUDA_TAG}-devel-ubuntu22.04 AS build
ARG HOROVOD_GPU_OPERATIONS=NCCL
ENV DEBIAN_FRONTEND=noninteractive TF_USE_LEGACY_KERAS=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv python3.11-dev g++ make patch ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
# Linking and the import checks need libcuda.so.1, which only the GPU driver provides: the
# toolkit's stub stands in during the build and leaves the linker cache afterwards.
RUN ldconfig /usr/local/cuda/targets/x86_64-linux/lib/stubs \
 && make setup \
 && .venv/bin/horovodrun --check-build \
 && ldconfig

FROM nvidia/cuda:${CUDA_TAG}-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive TF_USE_LEGACY_KERAS=1 PYTHONUNBUFFERED=1 PATH=/app/.venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python3.11 openssh-server openssh-client \
 && apt-get purge -y --auto-remove software-properties-common gpg-agent \
 && rm -rf /var/lib/apt/lists/*
RUN cudnn=$(dpkg-query -W -f='${Version}' libcudnn9-cuda-12) \
 && dpkg --compare-versions "$cudnn" ge 9.3 \
 || { echo "cuDNN ${cudnn:-missing} is older than the 9.3 TensorFlow 2.20 was built with" >&2; exit 1; }
# horovodrun reaches the workers over ssh as root with the keys the MPI operator mounts from a
# Secret at /root/.ssh: pods have no known host keys, and sshd's StrictModes rejects the modes of
# a Secret volume (the MPI operator's own images turn both checks off the same way).
RUN mkdir -p /run/sshd \
 && printf 'StrictModes no\n' > /etc/ssh/sshd_config.d/mpi-operator.conf \
 && printf 'Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n' \
      > /etc/ssh/ssh_config.d/mpi-operator.conf
COPY --from=build /app /app
WORKDIR /app
CMD ["llmrec", "--help"]
