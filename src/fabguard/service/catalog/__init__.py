"""What is built where and by whom: products, CM sites, fixtures and production orders."""
