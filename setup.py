"""Fashion multimodal search catalog: incremental CLIP embedder on Spark + Delta."""

from setuptools import setup

setup(
    name="fashion-multimodal-catalog",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10",
    packages=[
        "conf", "schemas", "streaming", "udfs", "jobs", "bench",
        "app", "app.index", "app.services", "app.routes", "app.routes.v1",
    ],
    package_data={
        "conf": ["*.yaml"],
        "app": ["data/*.json", "static/*.html"],
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
        ]
    },
)
