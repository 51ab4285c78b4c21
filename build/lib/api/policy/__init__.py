"""Cedar policies: who may take which action on which resource."""
