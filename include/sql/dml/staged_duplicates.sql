-- Is any key staged twice for a symbol? Asked only of a batch whose keys were not written in
-- ascending order (stage_bars records that); tickstock.bars never returns such a batch.
SELECT EXISTS (SELECT 1 FROM {staged} GROUP BY symbol, {staged_key} HAVING count(*) > 1)
