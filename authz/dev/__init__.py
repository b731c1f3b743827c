"""Development aids: demo key manager, echo upstream, Envoy config generator. Not for production."""
