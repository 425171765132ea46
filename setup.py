"""Fashion multimodal search catalog: incremental CLIP embedder on Spark + Delta.

The wheel runs the jobs on a Databricks cluster (DBR 17.3 LTS ML brings Spark, Delta, torch,
transformers and mlflow) or any Spark cluster: ``install_requires`` names lower bounds only, so it
never shadows a runtime's own packages, and leaves pyspark and delta-spark to the runtime
(``[local]`` adds them for a laptop). ``requirements*.txt`` pin the exact versions tested here.
"""

from setuptools import find_packages, setup

LOCAL = ["pyspark==4.0.1", "delta-spark==4.0.1"]
SERVE = ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9", "deltalake>=1.0", "faiss-cpu>=1.8"]
INT8 = ["onnxruntime>=1.17", "onnx>=1.15"]
OPENVINO = ["openvino>=2025.0", "nncf>=3.0"]  # model.precision openvino-bf16 / openvino-int8 (auto tries them)
DATABRICKS = ["databricks-ai-search>=0.81"]
REPORTS = ["matplotlib>=3.7", "tqdm>=4.60"]
DEV = ["pytest>=8", "chispa>=0.10", "httpx>=0.27", "playwright>=1.40", "ruff>=0.6", "import-linter>=2.1",
       "databricks-bundles>=0.248", "grpcio>=1.67", "grpcio-status>=1.67", "googleapis-common-protos>=1.65"]

setup(
    name="fashion-multimodal-catalog",
    version="0.2.0",
    description="Fashion multimodal search catalog: incremental CLIP embedder on Spark + Delta",
    long_description=__doc__,
    python_requires=">=3.10",
    # One import root (src/fashion_catalog): the wheel installs one top-level name, never a generic one such as
    # `streaming` that a Databricks ML runtime already has (mosaicml-streaming).
    package_dir={"": "src"},
    packages=find_packages("src", include=["fashion_catalog", "fashion_catalog.*"]),
    package_data={
        "fashion_catalog.conf": ["*.yaml", "*.txt"],
        "fashion_catalog.encoders": ["serving-requirements.txt"],
        "fashion_catalog.evaluation": ["query_set.yaml", "unanswerable_queries.txt"],
        "fashion_catalog.app": ["static/*.html"],
        "fashion_catalog.personalization": ["data/*.json"],
    },
    install_requires=[
        "pyyaml>=6", "pydantic>=2.5", "numpy>=1.26", "pandas>=2.0,<3", "pyarrow>=14", "pillow>=10",
        "torch>=2.3", "transformers>=4.41", "mlflow>=2.12", "requests>=2.31", "databricks-sdk>=0.50",
    ],
    extras_require={
        "local": LOCAL,
        "serve": SERVE,
        "int8": INT8,
        "openvino": OPENVINO,
        "databricks": DATABRICKS,
        "reports": REPORTS,
        "dev": LOCAL + SERVE + INT8 + OPENVINO + DATABRICKS + REPORTS + DEV,
    },
    entry_points={
        "console_scripts": [
            "fashion-load-catalog=fashion_catalog.jobs.load_catalog:main",
            "fashion-backfill=fashion_catalog.jobs.backfill:main",
            "fashion-stream=fashion_catalog.jobs.stream:main",
            "fashion-reembed=fashion_catalog.jobs.reembed:main",
            "fashion-reconcile=fashion_catalog.jobs.reconcile:main",
            "fashion-demo=fashion_catalog.jobs.demo:main",
            "fashion-cluster-demo=fashion_catalog.jobs.cluster_demo:main",
            "fashion-register-model=fashion_catalog.jobs.register_model:main",
            "fashion-user-features=fashion_catalog.jobs.build_user_features:main",
            "fashion-search-service=fashion_catalog.app.main:main",
            "fashion-create-indexes=fashion_catalog.jobs.create_indexes:main",
            "fashion-setup=fashion_catalog.jobs.setup:main",
            "fashion-train-clip=fashion_catalog.jobs.train_clip:main",
            "fashion-evaluate=fashion_catalog.jobs.evaluate:main",
            "fashion-analyze-latents=fashion_catalog.jobs.analyze_latents:main",
        ]
    },
)
