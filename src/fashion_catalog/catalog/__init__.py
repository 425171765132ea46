"""The retailer's catalog: the Kaggle-layout parser (dirty rows included), the loader into the products
table, and the synthetic demo catalog."""
