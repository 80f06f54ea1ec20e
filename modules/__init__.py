"""Campaign modules (vote, poll, quiz, coupon, ...), loaded through the ``gatewayd.modules`` entry points."""
