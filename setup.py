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
DATABRICKS = ["databricks-vectorsearch>=0.40"]
REPORTS = ["matplotlib>=3.7", "tqdm>=4.60"]
DEV = ["pytest>=8", "chispa>=0.10", "httpx>=0.27", "playwright>=1.40", "ruff>=0.6", "import-linter>=2.1",
       "databricks-bundles>=0.248", "grpcio>=1.67", "grpcio-status>=1.67", "googleapis-common-protos>=1.65"]

setup(
    name="fashion-multimodal-catalog",
    version="0.2.0",
    description="Fashion multimodal search catalog: incremental CLIP embedder on Spark + Delta",
    long_description=__doc__,
    python_requires=">=3.10",
    packages=find_packages(include=[
        "conf", "schemas", "encoders", "lakehouse", "udfs", "streaming", "catalog", "search", "personalization",
        "vectorsearch", "training", "evaluation", "demo", "jobs", "app", "app.*",
    ]),
    package_data={
        "conf": ["*.yaml", "*.txt"],
        "encoders": ["serving-requirements.txt"],
        "evaluation": ["query_set.yaml"],
        "app": ["static/*.html"],
        "personalization": ["data/*.json"],
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
            "fashion-load-catalog=jobs.load_catalog:main",
            "fashion-backfill=jobs.backfill:main",
            "fashion-stream=jobs.stream:main",
            "fashion-reembed=jobs.reembed:main",
            "fashion-reconcile=jobs.reconcile:main",
            "fashion-demo=jobs.demo:main",
            "fashion-cluster-demo=jobs.cluster_demo:main",
            "fashion-register-model=jobs.register_model:main",
            "fashion-user-features=jobs.build_user_features:main",
            "fashion-search-service=app.main:main",
            "fashion-create-indexes=jobs.create_indexes:main",
            "fashion-train-clip=jobs.train_clip:main",
            "fashion-evaluate=jobs.evaluate:main",
            "fashion-analyze-latents=jobs.analyze_latents:main",
        ]
    },
)
