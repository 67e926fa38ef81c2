pm.test('status is 200', function () {
    pm.response.to.have.status(200);
});
const body = pm.response.json();
pm.test('the answer is a page of records', function () {
    pm.expect(body.collection).to.eql(pm.variables.get('collection'));
    pm.expect(body.records).to.be.an('array');
    pm.expect(body).to.have.property('next_cursor');
    body.records.forEach(function (record) {
        pm.expect(record).to.include.keys('id', 'collection', 'owner_id', 'client_id', 'created_at', 'data');
    });
});
