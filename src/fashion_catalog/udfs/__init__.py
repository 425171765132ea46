"""What Spark runs on the executors: the Arrow pandas encoding UDFs and the Spark SQL expressions
(product description, hybrid vector) that have Spark-free twins in ``schemas`` and ``encoders``."""
