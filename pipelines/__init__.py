"""The TFX pipeline of the experiment's stages (issue #12).

    pipelines.pipeline.create_pipeline(config, ...)  -> tfx.dsl.Pipeline
    pipelines.runner.run_local(config, ...)          -> RunResult (LocalDagRunner, SQLite ML Metadata)
    pipelines.runner.compile_kubeflow(config, path)  -> PipelineJob JSON for Kubeflow Pipelines v2 / Vertex AI

Components (pipelines.components) call tfrs_llmrec.workflow.stages; the gates live in
pipelines.gates and the versioned, atomic push in pipelines.push. Importing this package selects
Keras 2 before anything imports TensorFlow (TFX executors and the Trainer's run_fn included).
"""

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()
