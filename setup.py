"""Fashion multimodal search catalog: incremental CLIP embedder on Spark + Delta."""

from setuptools import find_packages, setup

setup(
    name="fashion-multimodal-catalog",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10",
    packages=find_packages(include=[
        "conf", "schemas", "encoders", "lakehouse", "udfs", "streaming", "catalog", "search", "personalization",
        "training", "evaluation", "demo", "jobs", "app", "app.*", "bench",
    ]),
    package_data={
        "conf": ["*.yaml"],
        "app": ["static/*.html"],
        "personalization": ["data/*.json"],
    },
    entry_points={
        "console_scripts": [
            "fashion-load-catalog=jobs.load_catalog:main",
            "fashion-backfill=jobs.backfill:main",
            "fashion-stream=jobs.stream:main",
            "fashion-reembed=jobs.reembed:main",
            "fashion-demo=jobs.demo:main",
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
