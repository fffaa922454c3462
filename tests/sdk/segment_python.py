"""Sends identify, track, page and alias calls with Segment's official Python SDK
(segment-analytics-python, from PyPI) to the host and write key given on the command line."""
import sys

import segment.analytics as analytics

host, write_key = sys.argv[1], sys.argv[2]
errors = []
analytics.write_key = write_key
analytics.host = host
analytics.sync_mode = True
analytics.max_retries = 0
analytics.on_error = lambda error, items: errors.append(str(error))

analytics.identify("sdk-user-1", {"email": "Sdk.User@Example.com", "name": "Sdk User", "plan": "pro"},
                   anonymous_id="sdk-anon-1", message_id="sdk-identify-1")
analytics.track("sdk-user-1", "purchase", {"amount": 42.5, "currency": "USD", "order_id": "o-1"},
                message_id="sdk-track-1")
analytics.page("sdk-user-1", category="Docs", name="Quick start", properties={"url": "https://example.com/docs"},
               message_id="sdk-page-1")
analytics.track(anonymous_id="sdk-anon-2", event="signup", message_id="sdk-track-2")
analytics.alias("sdk-anon-2", "sdk-user-1", message_id="sdk-alias-1")
analytics.flush()
if errors:
    print("errors:", errors)
    sys.exit(1)
print("sent")
