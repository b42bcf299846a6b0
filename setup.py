"""Packaging for tfrs_llmrec. The exact, tested environment is built by `make setup`
(scripts/setup_env.sh) from requirements/; the ranges below are what the code needs."""

from setuptools import find_packages, setup

setup(
    name="tfrs_llmrec",
    version="0.1.0",
    description="A TensorFlow Recommenders trainer that adds large-language-model semantics",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["tfrs_llmrec", "tfrs_llmrec.*", "beam_jobs", "beam_jobs.*",
                                    "pipelines", "pipelines.*"]),
    package_data={"tfrs_llmrec": ["py.typed"], "tfrs_llmrec.llm": ["prompts/*.txt"]},
    install_requires=[
        "tensorflow==2.20.0",
        "tf-keras==2.20.1",
        "tensorflow-text==2.20.1",
        "tensorflow-recommenders==0.7.7",
        "scann==1.4.2",
        "apache-beam==2.77.0",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        # Built from the patched sdist by `make setup` (scripts/setup_horovod.sh): pip cannot build
        # 0.28.1 against TF 2.20 unpatched. Only `train.strategy: horovod` imports it.
        "horovod": ["horovod==0.28.1"],
        # A local GGUF model as the LLM backend; builds llama.cpp from source (about 16 min on 2 cores).
        "gguf": ["llama-cpp-python==0.3.36"],
        "dev": ["pytest==8.3.4", "pytest-timeout==2.3.1"],
    },
    entry_points={"console_scripts": ["llmrec=tfrs_llmrec.cli.main:main"]},
)
