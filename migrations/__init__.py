"""The yoyo migrations, shipped inside the wheel as the package service.migrations.

Each NNNN_name.sql has its NNNN_name.rollback.sql; the service reads them with
importlib.resources, from the checkout or from an installed wheel alike.
"""
