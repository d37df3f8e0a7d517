from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """DRF's page format, `?page=` and `?pageSize=` (DESIGN.md, API conventions)."""

    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500
